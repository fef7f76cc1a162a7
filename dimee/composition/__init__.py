"""Where the roles meet: one builder per role (`roles`), all of them in one process (`pipeline`) and the demo's
streaming run (`streaming_report`). The only part of the core that imports the role packages."""
