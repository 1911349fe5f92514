"""The Tracehold console: a Streamlit client of the daemon API and PromQL (no state of its own).

``main.py`` is the entry point (``streamlit run app/main.py``); ``views/`` holds one
module per page; the other modules are the small helpers the pages share.
"""
