//! Man pages of a command-line tool, from its clap definition: one page for the tool
//! (`zctl.1`) and one per subcommand, the way git names them (`zctl-get.1`,
//! `zlhd-token-create.1`). The `.deb` ships what `zlhd manpages DIR` and `zctl manpages DIR`
//! write.

use std::io;
use std::path::{Path, PathBuf};

/// Write the pages of `cmd` and of every subcommand below it into `dir` (created if
/// missing); answers the files written.
pub fn write_all(cmd: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    write_tree(
        cmd.clone().bin_name(cmd.get_name().to_string()),
        dir,
        &mut written,
    )?;
    Ok(written)
}

fn write_tree(cmd: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> io::Result<()> {
    let name = cmd
        .get_bin_name()
        .unwrap_or(cmd.get_name())
        .replace(' ', "-");
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone().name(name.clone())).render(&mut page)?;
    std::fs::write(&path, page)?;
    written.push(path);
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let bin = format!("{name} {}", sub.get_name());
        write_tree(sub.clone().bin_name(bin), dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_per_command_named_as_git_does() {
        let cmd = clap::Command::new("tool")
            .about("A tool")
            .subcommand(clap::Command::new("get").about("Get things"))
            .subcommand(
                clap::Command::new("token")
                    .about("Tokens")
                    .subcommand(clap::Command::new("list").about("List tokens")),
            );
        let dir = std::env::temp_dir().join(format!("zlh-man-{}", uuid::Uuid::new_v4()));
        let written = write_all(cmd, &dir).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["tool.1", "tool-get.1", "tool-token.1", "tool-token-list.1"]
        );
        let page = std::fs::read_to_string(dir.join("tool-token-list.1")).unwrap();
        assert!(page.contains(".TH tool-token-list 1"), "{page}");
        assert!(page.contains("List tokens"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
