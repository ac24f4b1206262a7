"""Carrier codecs: one small module per carrier's WebSocket media protocol, over the one phone
transport (telephony.media_streams.MediaStreamTransport), as Pipecat's frame serializers are.

How to add a carrier (Telnyx, Plivo, Vonage...): write `telephony/carriers/<name>.py` with a class
that satisfies `telephony.carriers.base.CarrierCodec` (parse the start message, decode one inbound
message into a `CarrierMessage`, format media / mark / clear), test it against a recorded or simulated
session, and mount a stream route for it with `telephony.media_streams.serve_stream(ws, codec, ...)`.
Pacing, the inbound policy, G.711, playback tracking, transfer and hang-up come with the transport.
"""
