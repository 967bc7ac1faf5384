// The screen at the lane: shows what the lane pushes (server-sent events); when the stream
// breaks (the lane stopped), "out of order". Text only, never markup.
"use strict";

const offline = JSON.parse(document.getElementById("offline").textContent);
let timer = null;

function show(screen) {
  document.body.className = "screen-" + screen.screen;
  document.body.dataset.screen = screen.screen;
  document.getElementById("title").textContent = screen.title || "";
  document.getElementById("subtitle").textContent = screen.subtitle || "";
  document.getElementById("ticket-class").textContent = screen.ticket_class || "";
  document.body.style.backgroundColor = screen.colour || "";
}

function render(view) {
  clearTimeout(timer);
  show(view.screen);
  if (view.remaining_ms > 0) timer = setTimeout(() => show(view.base), view.remaining_ms);
  if (view.decided_at && document.body.dataset.decidedAt !== String(view.decided_at)) {
    document.body.dataset.delayMs = String(Date.now() - view.decided_at * 1000);  // decision → drawn (one clock)
    document.body.dataset.decidedAt = String(view.decided_at);
  }
}

render(JSON.parse(document.getElementById("initial").textContent));
let broken = null;
const source = new EventSource("/events");
source.onmessage = (event) => { clearTimeout(broken); broken = null; render(JSON.parse(event.data)); };
source.onerror = () => {
  if (broken === null) broken = setTimeout(() => { clearTimeout(timer); show(offline); }, 1000);
};
