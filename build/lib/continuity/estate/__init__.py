"""The estate: a synthetic police estate whose truth is known (``continuity estate generate``)."""
