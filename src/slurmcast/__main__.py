from slurmcast.cli import main

raise SystemExit(main())
