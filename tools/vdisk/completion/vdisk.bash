# bash completion for vdisk (installed as share/bash-completion/completions/vdisk).
_vdisk() {
  local cur prev words cword
  _init_completion || return
  local commands="create info convert attach detach list mirror resize expand compact merge
                  set-parent check map compare metadata read write"
  if ((cword == 1)); then
    COMPREPLY=($(compgen -W "$commands --help --version" -- "$cur"))
    return
  fi
  local command=${words[1]} options=""
  case $command in
    create) options="--size --type --fixed --block-size --sector-size --parent --source" ;;
    info) options="--output=json --output=human -U --force-share" ;;
    convert) options="--type --fixed --block-size -p --progress" ;;
    attach) options="--read-only --permanent --tcp" ;;
    list) options="--output=json --output=human" ;;
    mirror) options="--existing -p --progress" ;;
    resize) options="--allow-unsafe --smallest-safe -p --progress" ;;
    expand) options="-p --progress" ;;
    compact) options="--no-zero-scan --no-block-moves -p --progress" ;;
    merge) options="--depth -p --progress" ;;
    check) options="--repair --output=json --output=human" ;;
    map) options="--output=json --output=human" ;;
    read) options="--offset --length --to" ;;
    write) options="--offset --length --pattern --from" ;;
    metadata)
      if ((cword == 3)); then
        COMPREPLY=($(compgen -W "list get set delete" -- "$cur"))
        return
      fi
      ;;
  esac
  case $prev in
    --type | -t)
      COMPREPLY=($(compgen -W "vhd vhdx raw" -- "$cur"))
      return
      ;;
    --size | -s | --block-size | --sector-size | --offset | --length | --pattern | --depth)
      return
      ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$options --help" -- "$cur"))
    return
  fi
  _filedir
}
complete -F _vdisk vdisk
