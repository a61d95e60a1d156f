from medsam_agent_rt.cli import main

raise SystemExit(main())
