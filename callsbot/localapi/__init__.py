"""Local HTTP servers that speak the real DexScreener and Cielo schemas, errors included.

They serve recorded or scripted data on a loopback port: the demo replays its bundled session
through them, the benchmarks measure against them, and the tests inject faults with them. No
code path of the bot itself knows they exist; it is simply pointed at their URL.
"""
