# Builds dist\unmask-studio-<version>-setup.exe from dist\unmask-studio\ with Inno Setup 6.
#   powershell -ExecutionPolicy Bypass -File installer\windows\build-installer.ps1
# Needs Inno Setup 6.3 or newer (https://jrsoftware.org/isinfo.php; or: winget install JRSoftware.InnoSetup)
# and the bundle (bash packaging/build.sh, from Git Bash, on Windows).
$ErrorActionPreference = "Stop"
$root = Resolve-Path (Join-Path $PSScriptRoot "..\..")
$match = Select-String -Path (Join-Path $root "pyproject.toml") -Pattern '^version = "([^"]+)"' | Select-Object -First 1
if (-not $match) { throw "no version = ""..."" line in pyproject.toml" }
$version = $match.Matches[0].Groups[1].Value

$iscc = Get-Command ISCC.exe -ErrorAction SilentlyContinue | Select-Object -ExpandProperty Source
if (-not $iscc) {
    $candidates = @("${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe", "$env:ProgramFiles\Inno Setup 6\ISCC.exe",
                    "$env:LOCALAPPDATA\Programs\Inno Setup 6\ISCC.exe")
    $iscc = $candidates | Where-Object { Test-Path $_ } | Select-Object -First 1
}
if (-not $iscc) { throw "ISCC.exe (Inno Setup 6) not found: install it (winget install JRSoftware.InnoSetup)" }

$started = Get-Date
& $iscc "/DAppVersion=$version" (Join-Path $PSScriptRoot "unmask-studio.iss")
if ($LASTEXITCODE -ne 0) { throw "ISCC failed with exit code $LASTEXITCODE" }
$setup = Join-Path $root "dist\unmask-studio-$version-setup.exe"
$mb = [math]::Round((Get-Item $setup).Length / 1MB)
Write-Host ("installer: {0}, {1} MB, built in {2:n0} s" -f $setup, $mb, ((Get-Date) - $started).TotalSeconds)
