#!/usr/bin/env bash
# Create the OpenPrompt 1.0.1 virtual environment used by openprompt_side.py.
#
#   bash experiments/bench/setup_openprompt_env.sh
#   OPENPROMPT_VENV=/some/dir bash experiments/bench/setup_openprompt_env.sh
#
# The venv lives outside the repo (default ~/.cache/promptlearn/openprompt-venv);
# nothing from OpenPrompt is copied into promptlearn. OpenPrompt only imports
# with old transformers, hence the pins. Idempotent: if the venv already
# imports openprompt, nothing is done. PYTHON selects the interpreter (default python3).
#
# Tested with Python 3.11: the recipe below is enough for `import openprompt`
# and for the pipeline openprompt_side.py uses (load_plm, ManualTemplate,
# ManualVerbalizer, PromptDataLoader, PromptForClassification); no extra
# package was needed. transformers 4.30.2 loads a model/tokenizer directory
# saved by transformers 5 (it ignores the new "dtype"/"backend" keys; weights
# load as float32 with no missing keys).
set -euo pipefail

VENV="${OPENPROMPT_VENV:-$HOME/.cache/promptlearn/openprompt-venv}"
PYTHON="${PYTHON:-python3}"

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import openprompt" >/dev/null 2>&1; then
    echo "OpenPrompt venv already set up: $VENV"
    exit 0
fi

echo "Creating OpenPrompt venv at $VENV"
mkdir -p "$(dirname "$VENV")"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --no-input)

# Never an unpinned torch.
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" "transformers==4.30.2" "datasets==2.14.7" scikit-learn sentencepiece \
    tqdm tensorboardX nltk yacs dill "rouge==1.0.0" pyarrow scipy
"${PIP[@]}" --no-deps "openprompt==1.0.1"

"$VENV/bin/python" -c "import openprompt, transformers, torch; print('openprompt OK; transformers', transformers.__version__, '; torch', torch.__version__)"
echo "Done: $VENV/bin/python"
