"""The web console rank 0 serves: live loss curves over Socket.IO, save/stop controls that
reach every rank, and a TF-Serving-style REST predict route on the live weights."""
