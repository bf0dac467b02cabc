from framestamp.cli import main

raise SystemExit(main())
