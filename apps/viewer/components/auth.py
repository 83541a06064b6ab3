"""Optional sign-in: when ``secrets.toml`` has an ``[auth]`` section (Streamlit OIDC), nothing
is shown until the user has logged in with the identity provider."""

from __future__ import annotations

import streamlit as st


def login_configured() -> bool:
    try:
        return bool(st.secrets.load_if_toml_exists()) and "auth" in st.secrets
    except Exception:  # noqa: BLE001 - an unreadable secrets file means no login configured
        return False


def require_login() -> None:
    """Stop the page for anonymous users when OIDC login is configured."""
    if not login_configured():
        return
    if not st.user.get("is_logged_in", False):
        st.title("medssl viewer")
        st.write("Sign in to open scans.")
        st.button("Log in", on_click=st.login, key="login")
        st.stop()
    st.sidebar.button("Log out", on_click=st.logout, key="logout")
