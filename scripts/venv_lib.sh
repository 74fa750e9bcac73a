# Sourced by bootstrap.sh and setup_vllm_env.sh: create $VENV if missing, and a quiet pip install.
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip_install() {
    # This machine's pip config names local index folders that may be absent; drop that noise only.
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
