//! `keyledger export` and `keyledger import`.

use clap::Args;

use super::DataDir;

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    data: DataDir,
}

#[derive(Args)]
pub struct ImportArgs {
    #[command(flatten)]
    data: DataDir,
}

pub fn export(_args: ExportArgs) -> anyhow::Result<()> {
    anyhow::bail!("export is not built yet")
}

pub fn import(_args: ImportArgs) -> anyhow::Result<()> {
    anyhow::bail!("import is not built yet")
}
