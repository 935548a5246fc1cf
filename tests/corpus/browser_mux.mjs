// Re-mux demuxed H.264 + AAC packets with mp4-muxer (npm), the muxer of WebCodecs recording
// pipelines in the browser: `node browser_mux.mjs <mp4-muxer dir> <manifest.json> <out.mp4>`.
// The manifest (tests/corpus/recipes.py writes it) lists each packet's track, bytes (offset
// and size in manifest.bin), presentation time and duration in microseconds and keyframe
// flag, and the decoder configurations (avcC, AudioSpecificConfig), as WebCodecs hands them.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [moduleDir, manifestPath, outPath] = process.argv.slice(2);
const { Muxer, ArrayBufferTarget } = await import(
  pathToFileURL(join(moduleDir, "mp4-muxer", "build", "mp4-muxer.mjs")).href
);
const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
const blob = readFileSync(manifestPath.replace(/\.json$/, ".bin"));
const { video, audio } = manifest;
const muxer = new Muxer({
  target: new ArrayBufferTarget(),
  video: { codec: "avc", width: video.width, height: video.height, frameRate: video.fps },
  audio: { codec: "aac", numberOfChannels: audio.channels, sampleRate: audio.sampleRate },
  fastStart: manifest.fastStart,
  minFragmentDuration: manifest.minFragmentDuration,
});
let firstVideo = true;
let firstAudio = true;
for (const p of manifest.packets) {
  const data = new Uint8Array(blob.buffer, blob.byteOffset + p.offset, p.size);
  if (p.track === "v") {
    const meta = firstVideo
      ? { decoderConfig: { codec: video.codec, codedWidth: video.width, codedHeight: video.height,
          description: Buffer.from(video.description, "base64") } }
      : undefined;
    muxer.addVideoChunkRaw(data, p.key ? "key" : "delta", p.time, p.duration, meta);
    firstVideo = false;
  } else {
    const meta = firstAudio
      ? { decoderConfig: { codec: "mp4a.40.2", numberOfChannels: audio.channels,
          sampleRate: audio.sampleRate, description: Buffer.from(audio.description, "base64") } }
      : undefined;
    muxer.addAudioChunkRaw(data, "key", p.time, p.duration, meta);
    firstAudio = false;
  }
}
muxer.finalize();
writeFileSync(outPath, Buffer.from(muxer.target.buffer));
