"""Market data: DexScreener client (``dexscreener``), quality gate and validator (``gate``)."""
