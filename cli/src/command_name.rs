//! The commands, by the word that names them, with what each takes: its
//! operands and the options that belong to some commands alone. Both the
//! parser (`args`) and the help texts (`help`) read it.

/// The commands, by the word that names them on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandName {
    Get,
    Put,
    Delete,
    Mget,
    Keys,
    Health,
    Ready,
    Metrics,
    Tree,
    Completions,
}

impl CommandName {
    /// Every command, in the order of the help text.
    pub const ALL: [CommandName; 10] = [
        CommandName::Get,
        CommandName::Put,
        CommandName::Delete,
        CommandName::Mget,
        CommandName::Keys,
        CommandName::Health,
        CommandName::Ready,
        CommandName::Metrics,
        CommandName::Tree,
        CommandName::Completions,
    ];

    pub fn from_word(word: &str) -> Option<CommandName> {
        CommandName::ALL
            .into_iter()
            .find(|name| name.word() == word)
    }

    pub fn word(self) -> &'static str {
        match self {
            CommandName::Get => "get",
            CommandName::Put => "put",
            CommandName::Delete => "delete",
            CommandName::Mget => "mget",
            CommandName::Keys => "keys",
            CommandName::Health => "health",
            CommandName::Ready => "ready",
            CommandName::Metrics => "metrics",
            CommandName::Tree => "tree",
            CommandName::Completions => "completions",
        }
    }

    /// Names of the command's operands: the required ones, then the optional
    /// ones; `mget` takes any number of KEYs after its first.
    pub fn operands(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            CommandName::Get | CommandName::Delete => (&["NODE", "KEY"], &[]),
            CommandName::Put => (&["NODE", "KEY", "VALUE"], &[]),
            CommandName::Mget => (&["NODE", "KEY"], &[]),
            CommandName::Health | CommandName::Ready | CommandName::Metrics | CommandName::Keys => {
                (&["NODE"], &[])
            }
            CommandName::Tree => (&[], &["NODE"]),
            CommandName::Completions => (&["SHELL"], &[]),
        }
    }

    /// The options that belong to this command alone which it takes.
    pub fn takes(self, option: &str) -> bool {
        match option {
            "--json" => self == CommandName::Tree,
            "--etag" => matches!(
                self,
                CommandName::Get | CommandName::Put | CommandName::Delete
            ),
            "--ttl" | "--if-absent" => self == CommandName::Put,
            "--if-match" => matches!(self, CommandName::Put | CommandName::Delete),
            "--prefix" | "--after" | "--limit" => self == CommandName::Keys,
            _ => true,
        }
    }
}

/// The options that only some commands take, with what `takes` says.
pub const COMMAND_OPTIONS: [(&str, &str); 8] = [
    ("--json", "'tree' (the other commands always print JSON)"),
    ("--etag", "'get', 'put' and 'delete'"),
    ("--ttl", "'put'"),
    ("--if-absent", "'put'"),
    ("--if-match", "'put' and 'delete'"),
    ("--prefix", "'keys'"),
    ("--after", "'keys'"),
    ("--limit", "'keys'"),
];
