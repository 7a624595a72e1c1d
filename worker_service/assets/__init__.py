"""Assets: fetching an upload, telling its type by content, extracting its text and storing it."""
