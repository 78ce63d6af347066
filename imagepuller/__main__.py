from imagepuller.cli import main

raise SystemExit(main())
