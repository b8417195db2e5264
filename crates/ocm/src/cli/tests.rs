//! Tests of the parser and the help texts, and that the tables behind them
//! agree: every option a help text shows is accepted, and nothing else is.

use super::*;

fn run(args: &[&str]) -> Result<Cli, UsageError> {
    parse(args.iter().copied())
}

fn command(args: &[&str]) -> Command {
    match run(args) {
        Ok(Cli {
            action: Action::Run(command),
            ..
        }) => command,
        other => panic!("{args:?}: expected a command, got {other:?}"),
    }
}

fn usage_error(args: &[&str]) -> UsageError {
    match run(args) {
        Err(e) => e,
        Ok(cli) => panic!("{args:?}: expected a usage error, got {cli:?}"),
    }
}

#[test]
fn every_command_parses_with_and_without_a_folder() {
    assert_eq!(
        command(&["up"]),
        Command::Up {
            dir: None,
            start: StartOptions::default()
        }
    );
    assert_eq!(
        command(&["down", "/p"]),
        Command::Down {
            dir: Some("/p".into())
        }
    );
    assert_eq!(command(&["ls"]), Command::Ls);
    assert_eq!(command(&["list"]), Command::Ls);
    assert_eq!(command(&["gc"]), Command::Gc);
    assert_eq!(command(&["stop"]), Command::Down { dir: None });
    for name in Name::ALL {
        if name.takes_dir() && name != Name::Exec {
            assert!(run(&[name.as_str(), "some/dir"]).is_ok(), "{name}");
        }
    }
}

#[test]
fn global_options_go_before_or_after_the_command() {
    let before = run(&["--json", "-q", "status", "/p"]).unwrap();
    let after = run(&["status", "/p", "--json", "--quiet"]).unwrap();
    assert_eq!(before, after);
    assert!(before.json && before.quiet);
    let dir = run(&["--state-dir", "/s", "ls"]).unwrap();
    assert_eq!(dir.state_dir, Some(PathBuf::from("/s")));
    let dir = run(&["ls", "--state-dir=/t"]).unwrap();
    assert_eq!(dir.state_dir, Some(PathBuf::from("/t")));
}

#[test]
fn start_options() {
    let Command::Up { dir, start } = command(&[
        "up",
        ".",
        "--port",
        "9000",
        "--hostname",
        "[::1]",
        "--password-generate",
        "--timeout",
        "2.5",
    ]) else {
        panic!("not up");
    };
    assert_eq!(dir, Some(PathBuf::from(".")));
    assert_eq!(start.port_policy, Some(PortPolicy::Fixed(9000)));
    assert_eq!(start.hostname.as_deref(), Some("::1"));
    assert!(start.password_generate);
    assert_eq!(start.timeout, Some(Duration::from_millis(2500)));
    let Command::Restart { start, .. } = command(&["restart", "--port-policy", "range:1-5"]) else {
        panic!("not restart");
    };
    assert_eq!(start.port_policy, Some(PortPolicy::Range(1..=5)));
}

#[test]
fn port_policies() {
    assert_eq!(parse_port_policy("project"), Ok(PortPolicy::Project));
    assert_eq!(parse_port_policy("auto"), Ok(PortPolicy::Auto));
    assert_eq!(parse_port_policy("fixed:80"), Ok(PortPolicy::Fixed(80)));
    assert_eq!(
        parse_port_policy("range:28000-28010"),
        Ok(PortPolicy::Range(28000..=28010))
    );
    for bad in [
        "",
        "fixed",
        "fixed:0",
        "fixed:70000",
        "range:5-1",
        "range:5",
        "ports",
        "range:a-b",
    ] {
        assert!(parse_port_policy(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn logs_options() {
    assert_eq!(
        command(&["logs"]),
        Command::Logs {
            dir: None,
            lines: DEFAULT_LOG_LINES,
            follow: false
        }
    );
    assert_eq!(
        command(&["logs", "/p", "-n", "5", "-f"]),
        Command::Logs {
            dir: Some("/p".into()),
            lines: 5,
            follow: true
        }
    );
    assert_eq!(
        command(&["logs", "-n5", "--lines=7"]),
        Command::Logs {
            dir: None,
            lines: 7,
            follow: false
        }
    );
}

#[test]
fn exec_takes_everything_after_the_double_dash() {
    assert_eq!(
        command(&["exec", "/p", "--port", "9", "--", "sh", "-c", "echo --json"]),
        Command::Exec {
            dir: Some("/p".into()),
            start: StartOptions {
                port_policy: Some(PortPolicy::Fixed(9)),
                ..StartOptions::default()
            },
            program: "sh".into(),
            args: vec!["-c".into(), "echo --json".into()],
        }
    );
    let Command::Exec { dir, program, .. } = command(&["exec", "--", "--weird", "--"]) else {
        panic!("not exec");
    };
    assert_eq!(dir, None);
    assert_eq!(program, OsString::from("--weird"));
}

#[test]
fn help_and_version() {
    assert_eq!(run(&["--help"]).unwrap().action, Action::Help(None));
    assert_eq!(run(&["-h"]).unwrap().action, Action::Help(None));
    assert_eq!(run(&["help"]).unwrap().action, Action::Help(None));
    assert_eq!(
        run(&["help", "logs"]).unwrap().action,
        Action::Help(Some(Name::Logs))
    );
    assert_eq!(
        run(&["up", "-h"]).unwrap().action,
        Action::Help(Some(Name::Up))
    );
    // Help wins over a bad option after it, as in most tools.
    assert_eq!(
        run(&["exec", "--help", "--bogus"]).unwrap().action,
        Action::Help(Some(Name::Exec))
    );
    assert_eq!(run(&["--version"]).unwrap().action, Action::Version);
    assert_eq!(run(&["-V"]).unwrap().action, Action::Version);
    for name in Name::ALL {
        let text = command_help(name);
        assert!(
            text.starts_with(&format!("Usage: {}", name.usage())),
            "{text}"
        );
    }
    assert!(overview().contains("Exit status"));
}

#[test]
fn bad_usage_is_explained() {
    let cases: &[(&[&str], &str, Option<Name>)] = &[
        (&[], "no command given", None),
        (&["frobnicate"], "unknown command 'frobnicate'", None),
        (&["--bogus"], "--bogus", None),
        (&["up", "--bogus"], "--bogus", Some(Name::Up)),
        (&["up", "a", "b"], "unexpected argument 'b'", Some(Name::Up)),
        (&["up", "--port"], "missing argument", Some(Name::Up)),
        (&["up", "--port", "0"], "not a port", Some(Name::Up)),
        (&["up", "--port", "x"], "not a port number", Some(Name::Up)),
        (
            &["up", "--port", "1", "--port-policy", "auto"],
            "cannot be combined",
            Some(Name::Up),
        ),
        (
            &["up", "--port", "1", "--port", "2"],
            "twice",
            Some(Name::Up),
        ),
        (&["up", "--timeout", "0"], "out of range", Some(Name::Up)),
        (&["up", "--timeout", "soon"], "not a number", Some(Name::Up)),
        (
            &["up", "--hostname", ""],
            "must not be empty",
            Some(Name::Up),
        ),
        (&["up", ""], "must not be empty", Some(Name::Up)),
        (&["down", "--port", "1"], "start option", Some(Name::Down)),
        (
            &["status", "a", "b"],
            "unexpected argument 'b'",
            Some(Name::Status),
        ),
        (&["ls", "/p"], "takes no folder", Some(Name::Ls)),
        (&["gc", "-f"], "'-f'", Some(Name::Gc)),
        (
            &["logs", "-n", "many"],
            "not a number of lines",
            Some(Name::Logs),
        ),
        (
            &["logs", "-n", "-3"],
            "not a number of lines",
            Some(Name::Logs),
        ),
        (&["logs", "-f", "--json"], "--follow", Some(Name::Logs)),
        (&["exec"], "no command given", Some(Name::Exec)),
        (&["exec", "/p"], "no command given", Some(Name::Exec)),
        (&["exec", "/p", "sh"], "after `--`", Some(Name::Exec)),
        (&["exec", "--"], "no command after", Some(Name::Exec)),
        (
            &["relay", "--json"],
            "cannot be combined",
            Some(Name::Relay),
        ),
        (&["help", "nope"], "unknown command 'nope'", None),
        (
            &[
                "prompt", "--team", "a::b", "--agent", "x", "--role", "y", "hi",
            ],
            "contain no \"::\"",
            Some(Name::Prompt),
        ),
        (&["--state-dir"], "missing argument", None),
        (
            &["url", "--state-dir", ""],
            "must not be empty",
            Some(Name::Url),
        ),
    ];
    for (args, needle, command) in cases {
        let error = usage_error(args);
        assert!(
            error.message.contains(needle),
            "{args:?}: {:?} does not mention {needle:?}",
            error.message
        );
        assert_eq!(error.command, *command, "{args:?}");
    }
}

/// The command a parsed [`Command`] is.
fn name_of(command: &Command) -> Name {
    match command {
        Command::Up { .. } => Name::Up,
        Command::Down { .. } => Name::Down,
        Command::Restart { .. } => Name::Restart,
        Command::Status { .. } => Name::Status,
        Command::Ls => Name::Ls,
        Command::Logs { .. } => Name::Logs,
        Command::Port { .. } => Name::Port,
        Command::Url { .. } => Name::Url,
        Command::Exec { .. } => Name::Exec,
        Command::Gc => Name::Gc,
        Command::Destroy { .. } => Name::Destroy,
        Command::Supervise(_) => Name::Supervise,
        Command::Unit(_) => Name::Unit,
        Command::Prompt(_) => Name::Prompt,
        Command::Session(session) => match session.as_ref() {
            crate::cli::SessionCommand::Ls { .. } => Name::SessionLs,
            crate::cli::SessionCommand::New(_) => Name::SessionNew,
            crate::cli::SessionCommand::Show { .. } => Name::SessionShow,
            crate::cli::SessionCommand::Rm { .. } => Name::SessionRm,
        },
        Command::Events { .. } => Name::Events,
        Command::Relay { .. } => Name::Relay,
        Command::Mcp(_) => Name::Mcp,
        Command::Sandbox(SandboxCommand::Ls) => Name::SandboxLs,
        Command::Sandbox(SandboxCommand::One { action, .. }) => match action {
            SandboxAction::Up { .. } => Name::SandboxUp,
            SandboxAction::Status => Name::SandboxStatus,
            SandboxAction::Down => Name::SandboxDown,
            SandboxAction::Restart => Name::SandboxRestart,
            SandboxAction::Destroy { .. } => Name::SandboxDestroy,
        },
    }
}

/// A valid value for an option whose value has this name; a new value
/// name needs one here.
fn sample_value(value_name: &str) -> &'static str {
    match value_name {
        "N" => "5",
        "P" => "auto",
        "HOST" => "127.0.0.1",
        "SECS" => "2",
        "DIR" => "/s",
        "POLICY" => "always",
        "SIZE" => "800M",
        "ID" | "TITLE" | "TEAM" | "AGENT" | "ROLE" => "x1",
        "PROVIDER/MODEL" => "fake/echo",
        "MODE" => "allow",
        "ADDR:PORT" => "127.0.0.1:8765",
        "NAME" => "OCM_MCP_TOKEN",
        "URL" => "file:///srv/app.git",
        "PATH" => "/k/id",
        other => panic!("no sample value for {other}: add one to sample_value"),
    }
}

/// The ways to type `option`, each with the arguments that give it a value.
fn spellings_of(option: &defs::OptionDef) -> Vec<Vec<String>> {
    let mut names: Vec<String> = vec![format!("--{}", option.long)];
    names.extend(option.aliases.iter().map(|a| format!("--{a}")));
    names.extend(option.short.map(|c| format!("-{c}")));
    names
        .into_iter()
        .map(|name| match option.kind {
            defs::Kind::Value { name: value, .. } => vec![name, sample_value(value).into()],
            defs::Kind::Switch(_) => vec![name],
        })
        .collect()
}

/// The options a help text mentions: `--word` and `-c` that start a word
/// (after a space, `(`, `[`, `/`, `,` or a backquote).
fn options_in(text: &str) -> std::collections::BTreeSet<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = std::collections::BTreeSet::new();
    for i in 0..chars.len() {
        let starts_word = i == 0 || " \n([/,`".contains(chars[i - 1]);
        if chars[i] != '-' || !starts_word {
            continue;
        }
        if chars.get(i + 1) == Some(&'-') {
            let name: String = chars[i + 2..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '-')
                .collect();
            let name = name.trim_end_matches('-');
            if !name.is_empty() {
                found.insert(format!("--{name}"));
            }
        } else if let Some(c) = chars.get(i + 1).filter(|c| c.is_ascii_alphabetic())
            && !chars.get(i + 2).is_some_and(|c| c.is_ascii_alphanumeric())
        {
            found.insert(format!("-{c}"));
        }
    }
    found
}

#[test]
fn every_command_has_a_usage_a_summary_and_a_help() {
    // Compared with blanks squeezed: the summaries are wrapped.
    let squeeze = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let overview = squeeze(&overview());
    for def in COMMANDS {
        let name = def.name;
        assert!(
            name.usage().starts_with(&format!("ocm {} ", def.word))
                || name.usage() == format!("ocm {}", def.word),
            "{name}: {}",
            name.usage()
        );
        assert!(!def.summary.trim().is_empty(), "{name} has no summary");
        assert!(!def.help.trim().is_empty(), "{name} has no help");
        assert!(
            overview.contains(&squeeze(&format!("{} {}", def.word, def.summary)))
                || overview.contains(&squeeze(&format!(
                    "{} {} {}",
                    def.word,
                    def.operands.join(" "),
                    def.summary
                )))
                || overview.contains(&format!(" {} [", def.word))
                    && overview.contains(&squeeze(def.summary)),
            "{name} is not in the overview:\n{overview}"
        );
        assert!(command_help(name).contains(def.help.split(' ').next().unwrap_or_default()));
        assert_eq!(
            COMMANDS.iter().filter(|other| other.name == name).count(),
            1,
            "{name} has more than one row"
        );
    }
}

#[test]
fn every_spelling_of_a_command_parses_to_it() {
    let mut seen = std::collections::BTreeSet::new();
    for def in COMMANDS {
        for spelling in def.spellings() {
            assert!(seen.insert(spelling), "{spelling} names two commands");
            assert_eq!(Name::parse(spelling), Some(def.name), "{spelling}");
            let mut args: Vec<&str> = spelling.split(' ').collect();
            args.extend(def.operands.iter().map(|_| "x"));
            if def.rest.is_some() {
                args.extend(["--", "true"]);
            }
            let parsed = command(&args);
            assert_eq!(name_of(&parsed), def.name, "{args:?} gave {parsed:?}");
            assert_eq!(
                run(&["help", spelling]).unwrap().action,
                Action::Help(Some(def.name))
            );
        }
    }
}

#[test]
fn help_shows_exactly_the_options_the_parser_accepts() {
    for def in COMMANDS {
        let name = def.name;
        let mut accepted = std::collections::BTreeSet::new();
        for option in OPTIONS {
            for spelled in spellings_of(option) {
                let mut args = vec![def.word.to_string()];
                args.extend(spelled.iter().cloned());
                let result = parse(args.iter().map(String::as_str));
                if def.accepts(option) {
                    accepted.insert(spelled[0].clone());
                    // Help after it proves it was taken, whatever the command
                    // still needs (exec's `--`).
                    args.push("--help".into());
                    let result = parse(args.iter().map(String::as_str));
                    assert!(result.is_ok(), "{args:?}: {result:?}");
                } else {
                    let error = result.expect_err(&format!("{args:?} must be refused"));
                    assert!(error.message.contains(&spelled[0]), "{args:?}: {error:?}");
                    assert_eq!(error.command, Some(name), "{args:?}");
                }
            }
        }
        let shown = options_in(&command_help(name));
        assert_eq!(
            shown,
            accepted,
            "{name}: the help shows {shown:?} but the parser accepts {accepted:?}:\n{}",
            command_help(name)
        );
    }
    // Before the command, only global options.
    for option in OPTIONS {
        for spelled in spellings_of(option) {
            let mut args = spelled.clone();
            args.push("ls".into());
            let result = parse(args.iter().map(String::as_str));
            assert_eq!(
                option.group.id == defs::GLOBAL.id,
                result.is_ok(),
                "{args:?}: {result:?}"
            );
        }
    }
}

#[test]
fn no_command_takes_two_options_spelled_alike() {
    for def in COMMANDS {
        let mut seen = std::collections::BTreeSet::new();
        for option in OPTIONS.iter().filter(|o| def.accepts(o)) {
            for spelled in spellings_of(option) {
                assert!(
                    seen.insert(spelled[0].clone()),
                    "{}: {}",
                    def.word,
                    spelled[0]
                );
            }
        }
    }
}

#[test]
fn help_texts_fit_the_width() {
    let mut texts = vec![overview()];
    texts.extend(Name::ALL.map(command_help));
    for text in texts {
        for line in text.lines() {
            assert!(
                line.chars().count() <= help::WIDTH,
                "{} columns: {line:?}",
                line.chars().count()
            );
            assert_eq!(line, line.trim_end(), "trailing blanks: {line:?}");
        }
    }
    assert!(overview().contains(
        "      --port-policy P      project: the project's port, else the next free one\n"
    ));
    assert!(command_help(Name::Logs).contains("\n  -n, --lines N  How many lines (default 50)\n"));
}

#[test]
fn a_subcommand_is_two_words() {
    let table = [
        defs::CommandDef {
            word: "session ls",
            aliases: &["session list"],
            ..COMMANDS[0]
        },
        defs::CommandDef {
            name: Name::Down,
            word: "session rm",
            aliases: &[],
            ..COMMANDS[0]
        },
        defs::CommandDef {
            name: Name::Ls,
            word: "ls",
            aliases: &[],
            ..COMMANDS[0]
        },
    ];
    let find = |words: &[&str]| {
        let mut rest = words[1..].iter().map(|w| w.to_string());
        defs::lookup(&table, words[0], &mut || rest.next()).map(|def| def.word)
    };
    assert_eq!(find(&["session", "ls"]), Ok("session ls"));
    assert_eq!(find(&["session", "list"]), Ok("session ls"));
    assert_eq!(find(&["session", "rm"]), Ok("session rm"));
    assert_eq!(find(&["ls"]), Ok("ls"));
    let missing = find(&["session"]).unwrap_err();
    assert!(
        missing.contains("needs a subcommand: ls, list, rm"),
        "{missing}"
    );
    let unknown = find(&["session", "frob"]).unwrap_err();
    assert!(unknown.contains("unknown subcommand 'frob'"), "{unknown}");
    let unknown = find(&["frob"]).unwrap_err();
    assert!(unknown.contains("(commands: session, ls)"), "{unknown}");
}

#[test]
fn sandbox_commands_parse_and_refuse_bad_input_before_anything_runs() {
    let name = |n: &str| sandbox::SandboxName::parse(n).unwrap();
    assert_eq!(
        command(&["sandbox", "up", "app", "--git", "file:///srv/app.git"]),
        Command::Sandbox(SandboxCommand::One {
            name: name("app"),
            action: SandboxAction::Up {
                git: Some("file:///srv/app.git".into()),
                ssh_key: None,
            },
        })
    );
    assert_eq!(
        command(&["sandbox", "up", "app", "--ssh-key", "/k/id"]),
        Command::Sandbox(SandboxCommand::One {
            name: name("app"),
            action: SandboxAction::Up {
                git: None,
                ssh_key: Some("/k/id".into()),
            },
        })
    );
    // A relative key path is made absolute: it goes into .env.
    let Command::Sandbox(SandboxCommand::One {
        action: SandboxAction::Up {
            ssh_key: Some(key), ..
        },
        ..
    }) = command(&["sandbox", "up", "app", "--ssh-key", "k"])
    else {
        panic!("an up with a key");
    };
    assert!(key.is_absolute() && key.ends_with("k"), "{key:?}");
    let global = run(&["--json", "sandbox", "status", "app", "-q"]).unwrap();
    assert!(global.json && global.quiet);
    assert_eq!(
        command(&["sandbox", "destroy", "app"]),
        Command::Sandbox(SandboxCommand::One {
            name: name("app"),
            action: SandboxAction::Destroy { yes: false },
        })
    );
    assert_eq!(
        command(&["sandbox", "destroy", "app", "--yes"]),
        Command::Sandbox(SandboxCommand::One {
            name: name("app"),
            action: SandboxAction::Destroy { yes: true },
        })
    );
    assert_eq!(
        command(&["sandbox", "list"]),
        Command::Sandbox(SandboxCommand::Ls)
    );
    for bad in ["../x", "a/b", "", &"n".repeat(65), "a.b"] {
        let error = usage_error(&["sandbox", "up", bad]);
        assert!(error.message.contains("is not allowed"), "{bad}: {error}");
        assert_eq!(error.command, Some(Name::SandboxUp));
    }
    assert!(run(&["sandbox", "up", &"n".repeat(64)]).is_ok());
    let metachar = usage_error(&["sandbox", "up", "a", "--git", "file:///tmp/x;touch /tmp/p"]);
    assert!(metachar.message.contains("refused"), "{metachar}");
    let missing = usage_error(&["sandbox", "status"]);
    assert!(missing.message.contains("NAME missing"), "{missing}");
    let wrong = usage_error(&["sandbox", "status", "a", "--git", "file:///x"]);
    assert!(
        wrong.message.contains("only sandbox up takes it"),
        "{wrong}"
    );
    let wrong = usage_error(&["sandbox", "up", "a", "--yes"]);
    assert!(wrong.message.contains("sandbox destroy"), "{wrong}");
    assert!(
        usage_error(&["sandbox", "ls", "extra"])
            .message
            .contains("extra")
    );
}

#[test]
fn sandbox_help_comes_from_the_table() {
    for args in [&["help", "sandbox"][..], &["sandbox", "--help"]] {
        assert_eq!(run(args).unwrap().action, Action::GroupHelp("sandbox"));
    }
    let text = group_help("sandbox");
    for def in COMMANDS.iter().filter(|d| d.word.starts_with("sandbox ")) {
        assert!(text.contains(&help::usage_line(def)), "{text}");
        assert!(text.contains(def.summary.split(' ').next().unwrap()));
    }
    assert_eq!(
        run(&["sandbox", "up", "--help"]).unwrap().action,
        Action::Help(Some(Name::SandboxUp))
    );
    let up = command_help(Name::SandboxUp);
    assert!(
        up.contains("--git URL") && up.contains("--ssh-key PATH"),
        "{up}"
    );
    assert!(command_help(Name::SandboxDestroy).contains("[--yes]"));
    assert!(overview().contains("6  waiting for the deploy key"));
}
