"""Bulk work on Ray Data: scoring a catalogue of listings (``cfd batch score``) and re-scoring a
brand's stored checks after its references change (``cfd batch rescore``).

Each Ray actor loads the model and opens the gallery once, then scores batch after batch through
the same ``Detector`` the API uses, so a row carries the API's ``CheckResult``. Needs the ``batch``
extra (``pip install 'counterfeit-detector[batch]'``).
"""
