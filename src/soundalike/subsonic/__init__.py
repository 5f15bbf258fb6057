"""soundalike as the sonic brain of a Subsonic server (Navidrome, gonic, Airsonic...).

- :mod:`.client`: the Subsonic API client (token auth with a salt, OpenSubsonic API
  keys, the plain password only where a server allows nothing else; paging).
- :mod:`.link`: which library track each of a server's songs is (``subsonic link``).
- :mod:`.remote`: songs analysed through the server's API (``index --subsonic``).
- :mod:`.proxy`: ``serve --subsonic-upstream``: every ``/rest`` call passed to the
  server, the OpenSubsonic ``sonicSimilarity`` extension and Instant Mix answered here.
- :mod:`.playlists`: playlists written into the server (``--to-subsonic``).
"""
