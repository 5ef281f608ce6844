"""The HTTP server around the app: uvicorn with limits on what one client may hold.

It owns the process's open-file limit (``limits``), the accounting of open connections
and their eviction (``guard``, pure), the uvicorn protocol that applies it (``protocol``)
and the server's run (``server``). It may import the assembly and everything below it.
"""
