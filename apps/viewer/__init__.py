"""The medssl clinician viewer (Streamlit). Pure, testable display logic lives in the modules
of this package; ``app.py`` and ``components/`` only lay out widgets. Scans are read through
``medssl.io`` and models run through ``medssl.inference``; nothing here knows about training."""
