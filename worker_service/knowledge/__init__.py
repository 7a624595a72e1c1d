"""Knowledge: chunking, the OpenRouter client, the graph schema and merge, budgets and storage."""
