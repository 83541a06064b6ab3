from medssl.cli import main

raise SystemExit(main())
