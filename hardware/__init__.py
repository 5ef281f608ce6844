"""The MuxPi hardware behind small interfaces, with simulators."""
