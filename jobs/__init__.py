"""Where the domain meets execution: stages as Ray tasks and actors, the stage graph, the CLI."""
