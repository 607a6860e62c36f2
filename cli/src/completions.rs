//! `treecache-cli completions bash`: a completion script for bash.

/// Completes commands, options (those of the command at hand), `help`'s
/// command names, `completions`' shell, and NODE as `self` or ids 1 to 7.
pub const BASH: &str = r#"# bash completion for treecache-cli
# Load it with: source <(treecache-cli completions bash)
_treecache_cli() {
    local cur prev words cword
    if declare -F _init_completion >/dev/null 2>&1; then
        _init_completion || return
    else
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi
    local commands="get put delete mget keys health ready metrics tree completions help"
    local common="--status --timeout --docker --base-port --help --version"
    local command="" i
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            --timeout|--base-port|--ttl|--if-match|--prefix|--after|--limit) ((i++)) ;;
            -*) ;;
            *) command=${words[i]}; break ;;
        esac
    done
    case $prev in
        --timeout|--base-port|--ttl|--if-match|--prefix|--after|--limit) return ;;
    esac
    local options=$common
    case $command in
        get) options+=" --etag" ;;
        put) options+=" --etag --ttl --if-match --if-absent" ;;
        delete) options+=" --etag --if-match" ;;
        keys) options+=" --prefix --after --limit" ;;
        tree) options+=" --json" ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$options" -- "$cur"))
        return
    fi
    case $command in
        "") COMPREPLY=($(compgen -W "$commands" -- "$cur")) ;;
        help) COMPREPLY=($(compgen -W "$commands" -- "$cur")) ;;
        completions) COMPREPLY=($(compgen -W "bash" -- "$cur")) ;;
        *)
            # The word right after the command is NODE.
            local operand=0
            for ((i = i + 1; i < cword; i++)); do
                [[ ${words[i]} == -* ]] || ((operand++))
            done
            if ((operand == 0)); then
                COMPREPLY=($(compgen -W "self 1 2 3 4 5 6 7" -- "$cur"))
            fi
            ;;
    esac
}
complete -F _treecache_cli treecache-cli
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command_name::CommandName;

    #[test]
    fn the_script_knows_every_command_and_option() {
        let commands: Vec<&str> = BASH
            .lines()
            .find_map(|l| l.trim().strip_prefix("local commands=\""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap()
            .split(' ')
            .collect();
        for name in CommandName::ALL {
            assert!(commands.contains(&name.word()), "{}", name.word());
        }
        for option in [
            "--status",
            "--timeout",
            "--docker",
            "--base-port",
            "--etag",
            "--ttl",
            "--if-match",
            "--if-absent",
            "--prefix",
            "--after",
            "--limit",
            "--json",
        ] {
            assert!(BASH.contains(option), "{option}");
        }
        assert!(BASH.contains("complete -F _treecache_cli treecache-cli"));
    }

    #[test]
    fn bash_reads_the_script() {
        let Ok(output) = std::process::Command::new("bash")
            .args(["-n", "-c", BASH])
            .output()
        else {
            return; // no bash on this machine
        };
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
