"""Streamlit building blocks of the viewer page: one module per panel."""
