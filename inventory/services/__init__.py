"""Business operations shared by views, tasks, commands and (later) the API."""
