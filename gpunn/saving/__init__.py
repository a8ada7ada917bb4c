"""The saving wing: a network's parts on disk.

The model file (:mod:`.model_file`: one ``.npz`` written atomically, read without pickle), the
rules of its metadata (:mod:`.metadata`) and ONNX export (:mod:`.onnx_export`).  Readers and
writers deal in plain parts (arrays and metadata), so nothing here needs the public
:class:`gpunn.Network`, which calls down into this wing.
"""
