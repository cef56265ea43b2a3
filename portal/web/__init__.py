"""The browser UI: server-rendered pages with light progressive enhancement."""
