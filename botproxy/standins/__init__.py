"""Local stand-ins speaking the real wire format: a Bot Connector v3 service, a Direct Line channel
(with its chat page). The bundled sample bot, a stand-in too, keeps its public name: botproxy.sample_bot."""
