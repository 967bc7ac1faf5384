import sys

from gate.cli.main import main

if __name__ == "__main__":  # (not again when a worker process is spawned: gate.sync.opening)
    sys.exit(main())
