// See SwanSphereComponent.h. Engine types are turned into wire-frame values here
// (SwanSphereAxes.h: Unreal's left-handed, centimetre axes -> x front, y left, z up) and
// nothing below the session core sees them.
#include "SwanSphereComponent.h"

#include <cmath>
#include <stdexcept>
#include <vector>

#include "Async/Async.h"
#include "Camera/PlayerCameraManager.h"
#include "Components/SceneCaptureComponent2D.h"
#include "Engine/TextureRenderTarget2D.h"
#include "GameFramework/PlayerController.h"
#include "SwanSphereSession.h"

using swansphere::bridge::Session;
using swansphere::bridge::SessionOptions;
using swansphere::bridge::WireQuaternion;

namespace {

WireQuaternion ToWire(const FQuat& Q) { return swansphere::bridge::unreal_quaternion(Q.X, Q.Y, Q.Z, Q.W); }

}  // namespace

USwanSphereComponent::USwanSphereComponent(const FObjectInitializer& ObjectInitializer)
    : Super(ObjectInitializer) {
  PrimaryComponentTick.bCanEverTick = true;
  bAllowSpatialization = false;  // the server renders binaural with the head already applied
}

bool USwanSphereComponent::Init(int32& SampleRate) {
  NumChannels = 2;
  // The server streams 44.1 or 48 kHz; the mixer resamples a synth component's output.
  if (SampleRate != 44100 && SampleRate != 48000) SampleRate = 48000;
  OutputSampleRate = SampleRate;
  return true;
}

void USwanSphereComponent::BeginPlay() {
  Super::BeginPlay();
  StartSeconds = NextFrameSeconds = FPlatformTime::Seconds();
  SentCaption = Caption;
  SessionOptions Options;
  Options.model = TCHAR_TO_UTF8(*Model);
  Options.caption = TCHAR_TO_UTF8(*Caption);
  Options.sample_rate = OutputSampleRate;
  Options.buffer_ms = BufferMilliseconds;
  const std::string Address = TCHAR_TO_UTF8(*ServerAddress);
  TWeakObjectPtr<USwanSphereComponent> Self(this);
  // Connecting waits for the server (and, on a first session, its model load): off the game thread.
  Async(EAsyncExecution::Thread, [Self, Address, Options]() {
    try {
      auto Made = std::make_shared<Session>(Address, Options);
      AsyncTask(ENamedThreads::GameThread, [Self, Made]() {
        if (Self.IsValid()) std::atomic_store(&Self->Session, Made);
      });
    } catch (const std::exception& Error) {
      UE_LOG(LogTemp, Error, TEXT("SwanSphere: %s"), UTF8_TO_TCHAR(Error.what()));
    }
  });
  Start();
}

void USwanSphereComponent::TickComponent(float DeltaTime, ELevelTick TickType,
                                         FActorComponentTickFunction* ThisTickFunction) {
  Super::TickComponent(DeltaTime, TickType, ThisTickFunction);
  std::shared_ptr<Session> Live = std::atomic_load(&Session);
  if (!Live) return;
  const double Now = FPlatformTime::Seconds() - StartSeconds;
  if (const APlayerController* Player = GetWorld()->GetFirstPlayerController()) {
    if (Player->PlayerCameraManager) {
      const WireQuaternion Head = ToWire(Player->PlayerCameraManager->GetCameraRotation().Quaternion());
      const double Dot = Head.w * SentHead[0] + Head.x * SentHead[1] + Head.y * SentHead[2] + Head.z * SentHead[3];
      // about 0.1 degree: finer turns are inaudible and not worth a message per tick
      if (std::fabs(Dot) < 0.999999) {
        Live->set_head(Head, Now);
        SentHead[0] = Head.w, SentHead[1] = Head.x, SentHead[2] = Head.y, SentHead[3] = Head.z;
      }
    }
  }
  if (Caption != SentCaption) {
    Live->set_caption(TCHAR_TO_UTF8(*Caption), Now);
    SentCaption = Caption;
  }
  if (FPlatformTime::Seconds() >= NextFrameSeconds) {
    // After a hitch, one frame and on from now: no burst of stale frames to catch up.
    NextFrameSeconds = FMath::Max(NextFrameSeconds + 1.0 / FramesPerSecond, FPlatformTime::Seconds());
    SendFrame(*Live, Now);
  }
  for (const std::string& Event : Live->take_events()) {
    UE_LOG(LogTemp, Warning, TEXT("SwanSphere: %s"), UTF8_TO_TCHAR(Event.c_str()));
  }
  if (Live->finished() && !Live->status().empty()) {
    UE_LOG(LogTemp, Error, TEXT("SwanSphere: the session ended: %s"), UTF8_TO_TCHAR(Live->status().c_str()));
    std::atomic_store(&Session, std::shared_ptr<swansphere::bridge::Session>());
  }
}

void USwanSphereComponent::SendFrame(Session& Live, double CaptureSeconds) {
  if (!Capture || !Capture->TextureTarget) return;
  FTextureRenderTargetResource* Target = Capture->TextureTarget->GameThread_GetRenderTargetResource();
  TArray<FColor> Pixels;
  if (!Target || !Target->ReadPixels(Pixels)) return;  // waits for the GPU: keep the target small
  const int32 Width = Capture->TextureTarget->SizeX, Height = Capture->TextureTarget->SizeY;
  std::vector<uint8_t> Rgb(static_cast<size_t>(Width) * Height * 3);
  for (int32 I = 0; I < Pixels.Num(); ++I) {  // rows top to bottom already; BGRA -> RGB
    Rgb[3 * I] = Pixels[I].R;
    Rgb[3 * I + 1] = Pixels[I].G;
    Rgb[3 * I + 2] = Pixels[I].B;
  }
  try {
    Live.send_view(Rgb, Width, Height, ToWire(Capture->GetComponentQuat()), Capture->FOVAngle, CaptureSeconds);
  } catch (const std::invalid_argument& Error) {
    UE_LOG(LogTemp, Warning, TEXT("SwanSphere: frame not sent: %s"), UTF8_TO_TCHAR(Error.what()));
  }
}

int32 USwanSphereComponent::OnGenerateAudio(float* OutAudio, int32 NumSamples) {
  // Audio render thread: the ring buffer's single reader.
  std::shared_ptr<Session> Live = std::atomic_load(&Session);
  if (!Live || Live->info().channels != NumChannels) {
    FMemory::Memzero(OutAudio, sizeof(float) * NumSamples);
    return NumSamples;
  }
  Live->read(OutAudio, NumSamples / NumChannels);
  return NumSamples;
}

void USwanSphereComponent::EndPlay(const EEndPlayReason::Type EndPlayReason) {
  Stop();
  std::atomic_store(&Session, std::shared_ptr<swansphere::bridge::Session>());  // ~Session ends the stream
  Super::EndPlay(EndPlayReason);
}
