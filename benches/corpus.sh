# shellcheck shell=bash
# The ingest benches' corpus (benches/gen_corpus.py: N_DX DX films of ~15 MB and a
# CT_SLICES-slice CT), made once per size under WORK/corpus and reused. Sourced:
#   . benches/corpus.sh; ensure_corpus WORK N_DX CT_SLICES PYTHON
ensure_corpus() {
  local work=$1 dx=$2 ct=$3 py=$4
  [ -f "$work/corpus/.done-$dx-$ct" ] && return 0
  echo "generating corpus ($dx DX, $ct CT slices) in $work/corpus"
  rm -rf "$work/corpus"
  "$py" benches/gen_corpus.py --out "$work/corpus" --dx "$dx" --ct "$ct"
  touch "$work/corpus/.done-$dx-$ct"
}
