"""One module per page: each has `path`, `title`, `layout(src, query)` and `register(app, src)`."""
