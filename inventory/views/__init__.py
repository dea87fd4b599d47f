"""keygov's pages, one module per area; ``base`` holds what they share."""
