// Unity adapter: streams what a camera sees to a SwanSphere server over gRPC and plays the
// generated, head-tracked audio through the AudioListener it sits on.
//
// Put it on the GameObject that holds the AudioListener (usually the main camera). Every
// 1 / framesPerSecond seconds it sends either a 360-degree panorama rendered at the
// listener's position (world-aligned, equirectangular) or the camera's own view with its
// orientation and horizontal field of view; the listener's head orientation goes out
// whenever it turns; chunks come back on a reader thread into PcmRingBuffer, and
// OnAudioFilterRead adds them to Unity's output.
//
// Needs (not compiled in this repository, which has no Unity or NuGet): Grpc.Net.Client and
// Google.Protobuf, the C# classes generated from protos/swansphere/v1/swansphere.proto
// (Grpc.Tools, GrpcServices="Client"), and an HTTP/2 handler for Unity's Mono runtime
// (Cysharp's YetAnotherHttpHandler). The engine-independent parts (SwanSphereAxes,
// PcmRingBuffer, PcmCodec) are compiled and tested here: tests/bridges.

using System;
using System.Collections.Concurrent;
using System.Threading;
using System.Threading.Tasks;
using Cysharp.Net.Http;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Swansphere.V1;
using UnityEngine;
using UnityEngine.Rendering;
using ServerEvent = Swansphere.V1.Event; // not UnityEngine.Event
using WireQuaternionMessage = Swansphere.V1.Quaternion; // not UnityEngine.Quaternion

namespace SwanSphere.Bridge.Unity
{
    [RequireComponent(typeof(AudioListener))]
    public sealed class SwanSphereListener : MonoBehaviour
    {
        [Tooltip("gRPC address of `swansphere serve` (HTTP/2 without TLS on loopback by default)")]
        public string serverAddress = "http://127.0.0.1:50051";
        [Tooltip("A model name from ListModels; empty: the server's default")]
        public string model = "";
        [TextArea] public string caption = "";
        [Tooltip("Binaural or stereo for headphones / a stereo speaker mode")]
        public OutputFormat format = OutputFormat.Binaural;
        [Tooltip("Camera whose view conditions the sound; empty: this GameObject's camera")]
        public Camera sceneCamera;
        [Tooltip("Send a 360-degree panorama (true) or the camera's field of view (false)")]
        public bool panorama = true;
        public int frameWidth = 256;
        [Range(1f, 30f)] public float framesPerSecond = 6f;
        [Tooltip("Playback buffer; the server paces chunks about 100 ms ahead")]
        [Range(50, 2000)] public int bufferMilliseconds = 500;

        private GrpcChannel _channel;
        private AsyncDuplexStreamingCall<ClientMessage, ServerMessage> _call;
        private BlockingCollection<ClientMessage> _outbox;
        private CancellationTokenSource _stop;
        private volatile PcmRingBuffer _ring;
        private float[] _block = new float[0];
        private ulong _sequence;
        private float _startTime, _nextFrameTime;
        private double _lastCaptureTime; // of the last frame queued (main thread only)
        private string _sentCaption;
        private WireQuaternionMessage _sentHead;
        private bool _readbackPending;
        private RenderTexture _cube, _image;

        /// <summary>Frames skipped because the outbox was full (the link is slower than the camera).</summary>
        public long FramesSkipped { get; private set; }

        /// <summary>The buffer between the network and the audio thread (counters: gaps, underruns).</summary>
        public PcmRingBuffer Buffer { get { return _ring; } }

        private void OnEnable()
        {
            int rate = AudioSettings.outputSampleRate;
            if (rate != 44100 && rate != 48000)
            {
                Debug.LogError("SwanSphere: the server streams 44100 or 48000 Hz; Unity's output is " + rate + " Hz");
                enabled = false;
                return;
            }
            if (sceneCamera == null) sceneCamera = GetComponent<Camera>();
            if (sceneCamera == null)
            {
                Debug.LogError("SwanSphere: no camera to send frames from; set sceneCamera");
                enabled = false;
                return;
            }
            _stop = new CancellationTokenSource();
            _outbox = new BlockingCollection<ClientMessage>(8);
            _channel = GrpcChannel.ForAddress(serverAddress, new GrpcChannelOptions
            {
                HttpHandler = new YetAnotherHttpHandler { Http2Only = true },
                DisposeHttpClient = true,
                MaxReceiveMessageSize = 16 * 1024 * 1024,
            });
            var client = new Swansphere.V1.SwanSphere.SwanSphereClient(_channel);
            _call = client.Session(cancellationToken: _stop.Token);
            var config = new SessionConfig
            {
                Model = model,
                Format = format,
                SampleRate = (uint)rate,
                SampleFormat = SampleFormat.Float32,
                Caption = caption ?? "",
                Head = HeadOrientation(),
                Pacing = Pacing.Realtime,
            };
            _sentCaption = caption ?? "";
            _sentHead = config.Head; // the session starts from it
            _outbox.Add(new ClientMessage { Config = config });
            _startTime = _nextFrameTime = Time.realtimeSinceStartup;
            _lastCaptureTime = 0;
            var call = _call;
            var outbox = _outbox;
            CancellationToken token = _stop.Token;
            Task.Run(() => SendLoop(call, outbox, token));
            Task.Run(() => ReceiveLoop(call, rate, token));
        }

        private void Update()
        {
            if (_call == null) return;
            var frame = new Frame { CaptureTimeS = Time.realtimeSinceStartup - _startTime };
            WireQuaternionMessage head = HeadOrientation();
            // about 0.1 degree: finer turns are inaudible and not worth a message per frame
            if (_sentHead == null || Math.Abs(Dot(head, _sentHead)) < 0.999999)
            {
                frame.Head = head;
                _sentHead = head;
            }
            if ((caption ?? "") != _sentCaption)
            {
                frame.Caption = new CaptionUpdate { Text = caption ?? "" };
                _sentCaption = caption ?? "";
            }
            if (Time.realtimeSinceStartup >= _nextFrameTime && !_readbackPending)
            {
                _nextFrameTime = Math.Max(_nextFrameTime + 1f / framesPerSecond, Time.realtimeSinceStartup);
                CaptureFrame(); // sends its own Frame when the GPU readback lands
            }
            if (frame.Head != null || frame.Caption != null) Post(frame);
        }

        private void Post(ClientMessage message)
        {
            if (!_outbox.TryAdd(message)) FramesSkipped++;
        }

        private void Post(Frame frame)
        {
            frame.Sequence = ++_sequence; // strictly increasing in the order frames are queued
            // A readback lands a frame or two after its capture, behind head updates stamped
            // later: the server refuses capture times that go back, so hold them level.
            frame.CaptureTimeS = Math.Max(frame.CaptureTimeS, _lastCaptureTime);
            _lastCaptureTime = frame.CaptureTimeS;
            Post(new ClientMessage { Frame = frame });
        }

        private static double Dot(WireQuaternionMessage a, WireQuaternionMessage b)
        {
            return a.W * b.W + a.X * b.X + a.Y * b.Y + a.Z * b.Z;
        }

        /// <summary>The listener's head on the wire axes (x front, y left, z up).</summary>
        private WireQuaternionMessage HeadOrientation()
        {
            UnityEngine.Quaternion r = transform.rotation;
            WireQuaternion q = SwanSphereAxes.UnityQuaternion(r.x, r.y, r.z, r.w);
            return new WireQuaternionMessage { W = (float)q.W, X = (float)q.X, Y = (float)q.Y, Z = (float)q.Z };
        }

        private void CaptureFrame()
        {
            int width = Mathf.Max(8, frameWidth);
            int height = panorama ? width / 2 : Mathf.Max(8, Mathf.RoundToInt(width / sceneCamera.aspect));
            if (_image == null || _image.width != width || _image.height != height)
            {
                if (_image != null) _image.Release();
                _image = new RenderTexture(width, height, 24, RenderTextureFormat.ARGB32);
            }
            var camera = new CameraFrame();
            if (panorama)
            {
                if (_cube == null)
                {
                    _cube = new RenderTexture(width / 2, width / 2, 24, RenderTextureFormat.ARGB32) { dimension = TextureDimension.Cube };
                }
                // Faces along the world axes, from the listener's position: the canvas's
                // centre column is world +z (Unity forward), a quarter width left of it -x.
                sceneCamera.RenderToCubemap(_cube, 63);
                _cube.ConvertToEquirect(_image, Camera.MonoOrStereoscopicEye.Mono);
                camera.Equirect = new Equirectangular();
            }
            else
            {
                RenderTexture previous = sceneCamera.targetTexture;
                sceneCamera.targetTexture = _image;
                sceneCamera.Render();
                sceneCamera.targetTexture = previous;
                UnityEngine.Quaternion r = sceneCamera.transform.rotation;
                WireQuaternion q = SwanSphereAxes.UnityQuaternion(r.x, r.y, r.z, r.w);
                camera.View = new FieldOfView
                {
                    Orientation = new WireQuaternionMessage { W = (float)q.W, X = (float)q.X, Y = (float)q.Y, Z = (float)q.Z },
                    HfovDeg = Camera.VerticalToHorizontalFieldOfView(sceneCamera.fieldOfView, sceneCamera.aspect),
                };
            }
            float captured = Time.realtimeSinceStartup - _startTime;
            _readbackPending = true;
            AsyncGPUReadback.Request(_image, 0, TextureFormat.RGBA32, request =>
            {
                _readbackPending = false;
                if (request.hasError || _call == null) return;
                camera.Image = new Image { Raw = new RawImage { Width = (uint)width, Height = (uint)height, Rgb = ByteString.CopyFrom(ToRgbTopDown(request.GetData<byte>(), width, height)) } };
                Post(new Frame { CaptureTimeS = captured, Camera = camera });
            });
        }

        // Unity's readback is RGBA with the bottom row first; the wire wants RGB, top row first.
        private static byte[] ToRgbTopDown(Unity.Collections.NativeArray<byte> rgba, int width, int height)
        {
            var rgb = new byte[width * height * 3];
            for (int row = 0; row < height; row++)
            {
                int src = (height - 1 - row) * width * 4, dst = row * width * 3;
                for (int x = 0; x < width; x++, src += 4, dst += 3)
                {
                    rgb[dst] = rgba[src];
                    rgb[dst + 1] = rgba[src + 1];
                    rgb[dst + 2] = rgba[src + 2];
                }
            }
            return rgb;
        }

        private static async Task SendLoop(AsyncDuplexStreamingCall<ClientMessage, ServerMessage> call,
                                           BlockingCollection<ClientMessage> outbox, CancellationToken token)
        {
            try
            {
                foreach (ClientMessage message in outbox.GetConsumingEnumerable(token))
                    await call.RequestStream.WriteAsync(message);
                await call.RequestStream.CompleteAsync(); // after EndOfVideo: the server finishes
            }
            catch (OperationCanceledException) { }
            catch (Exception e) { Debug.LogWarning("SwanSphere: sending stopped: " + e.Message); }
        }

        private async Task ReceiveLoop(AsyncDuplexStreamingCall<ClientMessage, ServerMessage> call, int rate,
                                       CancellationToken token)
        {
            try
            {
                var pcm = new float[0];
                PcmRingBuffer ring = null;
                while (await call.ResponseStream.MoveNext(token))
                {
                    ServerMessage message = call.ResponseStream.Current;
                    switch (message.MessageCase)
                    {
                        case ServerMessage.MessageOneofCase.Started:
                            ring = new PcmRingBuffer((int)message.Started.Channels, rate * bufferMilliseconds / 1000);
                            _ring = ring;
                            break;
                        case ServerMessage.MessageOneofCase.Audio:
                            AudioChunk chunk = message.Audio;
                            if (pcm.Length < chunk.Pcm.Length) pcm = new float[chunk.Pcm.Length];
                            var sampleFormat = chunk.SampleFormat == SampleFormat.Int16 ? WireSampleFormat.Int16 : WireSampleFormat.Float32;
                            int frames = PcmCodec.Decode(chunk.Pcm.ToByteArray(), (int)chunk.Channels, sampleFormat, pcm);
                            if (ring != null) ring.Write((long)chunk.SampleOffset, pcm, frames);
                            break;
                        case ServerMessage.MessageOneofCase.Event:
                            if (message.Event.Level == ServerEvent.Types.Level.Error)
                                Debug.LogError("SwanSphere: " + message.Event.Code + ": " + message.Event.Message);
                            else if (message.Event.Level == ServerEvent.Types.Level.Warning)
                                Debug.LogWarning("SwanSphere: " + message.Event.Message);
                            break;
                    }
                }
            }
            catch (OperationCanceledException) { }
            catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled) { }
            catch (Exception e) { Debug.LogError("SwanSphere: the session ended: " + e.Message); }
        }

        // Audio thread: add the generated audio to what Unity renders for this listener.
        private void OnAudioFilterRead(float[] data, int channels)
        {
            PcmRingBuffer ring = _ring;
            if (ring == null) return;
            int frames = data.Length / channels;
            if (_block.Length < frames * ring.Channels) _block = new float[frames * ring.Channels];
            ring.Read(_block, frames);
            int shared = Math.Min(channels, ring.Channels);
            for (int i = 0; i < frames; i++)
                for (int c = 0; c < shared; c++)
                    data[i * channels + c] += _block[i * ring.Channels + c];
        }

        private void OnDisable()
        {
            if (_call == null) return;
            _outbox.TryAdd(new ClientMessage { End = new EndOfVideo() });
            _outbox.CompleteAdding();
            // Let EndOfVideo leave, then close the call and its channel off the main thread.
            var call = _call;
            var channel = _channel;
            var stop = _stop;
            _call = null;
            _ring = null;
            Task.Delay(1000).ContinueWith(_ => { stop.Cancel(); call.Dispose(); channel.Dispose(); });
            if (_cube != null) _cube.Release();
            if (_image != null) _image.Release();
            _cube = _image = null;
        }
    }
}
