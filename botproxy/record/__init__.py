"""Recording: HTTP events in, exchange and activity rows out (the recorder state machine), in this
process or a child one; observers (checks, console) are handed in. `record.mitm` embeds mitmproxy."""
