"""``gpunn playground``: the tutorial's network live in the browser, trained by gpunn itself.

A face, like the command line: nothing in gpunn imports it but the command that starts it
(:mod:`gpunn.cli.playground`, the import-linter contracts say so).  It needs the optional
``playground`` extra (Starlette, uvicorn, websockets); only :mod:`gpunn.playground.app`
and :mod:`gpunn.playground.server` import them, so the data sets, the settings and
the sessions can be used (and tested) without it.

Modules: :mod:`~gpunn.playground.datasets` (the 2-D data sets and the input features),
:mod:`~gpunn.playground.data` (a tab's data set: generated, the digits or its CSV),
:mod:`~gpunn.playground.frames` (the socket's frames), :mod:`~gpunn.playground.takeaway` (the command line),
:mod:`~gpunn.playground.settings` (what the page may ask for, checked),
:mod:`~gpunn.playground.pictures` (heatmaps of every neuron),
:mod:`~gpunn.playground.session` (one browser tab's data, network and training thread),
:mod:`~gpunn.playground.app` (the HTTP and WebSocket routes),
:mod:`~gpunn.playground.server` (starting it), and the page itself in ``static/``.
"""
