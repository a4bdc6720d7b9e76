from callsbot.cli import main

raise SystemExit(main())
