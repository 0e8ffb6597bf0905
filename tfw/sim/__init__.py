"""Simulators for demos and tests: a Teams service that serves a fixture organisation
(:mod:`tfw.sim.teams`) and a Teams client that replays scenarios through the proxy
(:mod:`tfw.sim.client`). Neither talks to Microsoft."""
