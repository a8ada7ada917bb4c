"""The data wing: the data sets a network trains on.

The embedded digits and the named data sets (:mod:`.datasets`), IDX files (:mod:`.idx`),
downloads into the cache (:mod:`.download`) and the user's own files (:mod:`.userdata`).
It imports only the foundation: data knows nothing of networks.
"""
