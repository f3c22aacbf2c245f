// Unreal module rules for the SwanSphere component. The engine-independent core
// (../SwanSphereCore) compiles into this module; it needs grpc++ and protobuf, which Unreal
// does not ship: add them as a ThirdParty module (your own build of gRPC 1.51+, or a gRPC
// plugin that exposes one) and name it in GrpcModuleName below. The classes for the wire API
// come from `protoc --cpp_out --grpc_out` over protos/swansphere/v1/swansphere.proto (see
// bridges/README.md), copied into ../SwanSphereCore/swansphere/v1/.
using System.IO;
using UnrealBuildTool;

public class SwanSphere : ModuleRules
{
    private const string GrpcModuleName = "GrpcThirdParty";

    public SwanSphere(ReadOnlyTargetRules Target) : base(Target)
    {
        PCHUsage = PCHUsageMode.UseExplicitOrSharedPCHs;
        CppStandard = CppStandardVersion.Cpp17;
        bEnableExceptions = true; // the core reports refusals as std::invalid_argument / runtime_error
        PublicDependencyModuleNames.AddRange(new[] { "Core", "CoreUObject", "Engine", "AudioMixer" });
        PrivateDependencyModuleNames.Add(GrpcModuleName);
        string core = Path.Combine(ModuleDirectory, "..", "SwanSphereCore");
        PublicIncludePaths.Add(core);
    }
}
