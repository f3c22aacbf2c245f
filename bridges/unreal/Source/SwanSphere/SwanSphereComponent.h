// Unreal adapter: a synth component that streams what a scene capture sees to a SwanSphere
// server and plays the generated, head-tracked audio (2D: it is already binaural).
//
// Add it to the player's pawn, point Capture at a USceneCaptureComponent2D with a small
// render target (256 x 144 is plenty), and press play. Every 1 / FramesPerSecond seconds the
// capture's pixels go out as a field-of-view frame with the capture's orientation and
// horizontal FOV; the camera manager's rotation goes out as the head whenever it turns.
// Not compiled in this repository (no Unreal here); its core (../SwanSphereCore) is, and
// tests/bridges streams through a real server with it.
#pragma once

#include <memory>

#include "Components/SynthComponent.h"
#include "CoreMinimal.h"
#include "SwanSphereComponent.generated.h"

class USceneCaptureComponent2D;
namespace swansphere::bridge {
class Session;
}

UCLASS(ClassGroup = (Audio), meta = (BlueprintSpawnableComponent))
class SWANSPHERE_API USwanSphereComponent : public USynthComponent {
  GENERATED_BODY()

 public:
  USwanSphereComponent(const FObjectInitializer& ObjectInitializer);

  /** host:port of `swansphere serve` */
  UPROPERTY(EditAnywhere, Category = "SwanSphere")
  FString ServerAddress = TEXT("127.0.0.1:50051");

  /** A model name from ListModels; empty: the server's default */
  UPROPERTY(EditAnywhere, Category = "SwanSphere")
  FString Model;

  /** Scene caption; a change takes effect at the next generated patch (0.19 s) */
  UPROPERTY(EditAnywhere, BlueprintReadWrite, Category = "SwanSphere")
  FString Caption;

  /** The view that conditions the sound: its render target is sent as RGB8 */
  UPROPERTY(EditAnywhere, Category = "SwanSphere")
  TObjectPtr<USceneCaptureComponent2D> Capture;

  UPROPERTY(EditAnywhere, Category = "SwanSphere", meta = (ClampMin = "1", ClampMax = "30"))
  float FramesPerSecond = 6.f;

  /** Playback buffer between the network and the audio render thread */
  UPROPERTY(EditAnywhere, Category = "SwanSphere", meta = (ClampMin = "50", ClampMax = "2000"))
  int32 BufferMilliseconds = 500;

 protected:
  virtual bool Init(int32& SampleRate) override;
  virtual int32 OnGenerateAudio(float* OutAudio, int32 NumSamples) override;
  virtual void BeginPlay() override;
  virtual void EndPlay(const EEndPlayReason::Type EndPlayReason) override;
  virtual void TickComponent(float DeltaTime, ELevelTick TickType,
                             FActorComponentTickFunction* ThisTickFunction) override;

 private:
  void SendFrame(swansphere::bridge::Session& Live, double CaptureSeconds);

  // Set by the connecting task, read by the game and audio threads (std::atomic_load/store).
  std::shared_ptr<swansphere::bridge::Session> Session;
  int32 OutputSampleRate = 48000;
  double StartSeconds = 0.0;
  double NextFrameSeconds = 0.0;
  FString SentCaption;
  double SentHead[4] = {0.0, 0.0, 0.0, 0.0};  // w, x, y, z last sent; all zero: none yet
};
