"""The nurse console (/console) over the call records.

server.py uses two calls:
    web.console.install(app, settings)                 # at app creation: the /console routes
    services = await web.console.start(app, settings)  # in the lifespan, after app.state.hub exists
    ...
    await services.aclose()                            # at shutdown, after the hub drained its calls
"""

from web.console.service import ConsoleServices, install, open_services, start

__all__ = ["ConsoleServices", "install", "open_services", "start"]
