; Inno Setup 6 script for Unmask Studio: installs the PyInstaller one-folder bundle
; (dist\unmask-studio\, built on Windows by packaging\build.sh) and writes
; dist\unmask-studio-<version>-setup.exe.
;
; Build (from the repository root, after the bundle):
;   powershell -ExecutionPolicy Bypass -File installer\windows\build-installer.ps1
; or by hand:
;   "%ProgramFiles(x86)%\Inno Setup 6\ISCC.exe" /DAppVersion=0.1.0 installer\windows\unmask-studio.iss
;
; unmask-studio.exe is the app, the command line (`unmask-studio.exe generate ...`) and the
; installation check (`unmask-studio.exe --self-test`): started from the Start menu it hides its
; console window at once, started from a terminal it prints there.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "Unmask Studio"
#define AppExe "unmask-studio.exe"
#define Bundle "..\..\dist\unmask-studio"

#if !FileExists(AddBackslash(AddBackslash(SourcePath) + Bundle) + AppExe)
  #error "dist\unmask-studio\unmask-studio.exe not found: build the bundle first (bash packaging/build.sh)"
#endif

[Setup]
; AppId identifies the installation for upgrades and uninstall: never change it.
AppId={{6C1E2B0A-8F4D-4E0B-9B7A-3D5C2A1F7E91}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=Unmask Studio
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; Installs for all users with admin rights, or for the current user without them.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
SetupIconFile=..\..\resources\icons\unmask-studio.ico
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName={#AppName}
WizardStyle=modern
OutputDir=..\..\dist
OutputBaseFilename=unmask-studio-{#AppVersion}-setup
; Solid LZMA2 packs torch's large libraries well; "max" takes much longer for ~1% less.
Compression=lzma2/normal
SolidCompression=yes
LZMANumBlockThreads=4
CloseApplications=yes
RestartApplications=no

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#Bundle}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[InstallDelete]
; An upgrade replaces the bundle's libraries wholesale: files left over from an older version
; (a torch library that was renamed) must not be picked up by the new one.
Type: filesandordirs; Name: "{app}\_internal"

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExe}"; WorkingDir: "{app}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; WorkingDir: "{app}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent
