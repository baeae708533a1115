from pymem.cli import main

raise SystemExit(main())
