// Generated from training/dlip/export/manifest.schema.json by scripts/manifest-types.ts: do not edit, run
// `npm run --silent gen:types` after changing the schema (test/unit/manifest.test.ts checks this file is current).
// Objects list only the keys the schema names: a manifest may carry more, the server relies on none of them.

/**
 * a sha256 digest in lowercase hex (64 characters)
 */
export type Sha256 = string;
/**
 * a plain file name of the bundle: no '/' or '\', not '.', '..' or manifest.json
 */
export type FileName = string;
export type TokenId = number;
export type Count = number;

/**
 * manifest.json of a DLIP model bundle (FORMAT.md). Read at run time by training/dlip/export/manifest.py (jsonschema) and src/bundle/manifest.ts (Ajv). What a schema cannot say is checked in code on both sides: each graph's inputs and outputs are those of contract.json for this manifest's dims, model.text_width equals model.vision_width, and the checksums match the files.
 */
export interface Manifest {
  /**
   * 4: a bundle holds the graphs of its tasks only (contract.json's tasks) and says which first token the image-grounded text encoder reads (tokenizer.fusion_first_token); graph files may keep their weights in ONNX external data and have fp16 variants. 3 (still read: every graph and every task, [ENC] first) and 4: the decoder's cross-attention keys and values come from the cross_kv graph, computed once per image or question, and the decoder step takes per-row position_ids (a padded cache). Formats 1 and 2 (the decoder read encoder_hidden at every step) are no longer read: re-export such a bundle with `python -m dlip export BUNDLE --out BUNDLE --overwrite` (after `python -m dlip recover-weights BUNDLE` where it carries no weights) or from its run folder.
   */
  format_version: 3 | 4;
  /**
   * a short label of letters, digits, '.', '_' or '-' (1-64 characters, starting with a letter or digit; the model's name in requests, never a file path)
   */
  name: string;
  /**
   * The model's version string, reported with its name.
   */
  version: string;
  /**
   * Where the weights come from.
   */
  source: {
    /**
     * The run folder exported (absolute path), or null for random weights.
     */
    run?: string | null;
    /**
     * sha256 of the run's checkpoints/last.pt, or null for random weights.
     */
    checkpoint_sha256?: Sha256 | null;
    /**
     * True for randomly initialised weights (test fixtures).
     */
    random_init?: boolean;
    /**
     * The model size preset (dlip/presets.json).
     */
    preset?: string | null;
    /**
     * The random seed of random-init bundles.
     */
    seed?: number;
    /**
     * A Hugging Face BLIP checkpoint exported as it is (`dlip export HF_DIR`): its save_pretrained folder (absolute path).
     */
    hf_checkpoint?: string;
    /**
     * Its transformers class (config.json's architectures): BlipForImageTextRetrieval, BlipForConditionalGeneration or BlipForQuestionAnswering.
     */
    hf_architecture?: string;
    /**
     * The transformers version the export was checked against (see parity).
     */
    transformers_version?: string;
  };
  /**
   * ISO 8601 time of export, e.g. 2025-01-31T12:00:00+00:00.
   */
  created: string;
  preprocessing: Preprocessing;
  /**
   * The text tokenizer (file: a Hugging Face tokenizers file, lowercase WordPiece with a [CLS] $A [SEP] post-processor) and the token limits of the evaluation.
   */
  tokenizer: {
    file: FileName;
    /**
     * Whether text is lowercased before tokenizing.
     */
    lowercase: boolean;
    special_tokens: SpecialTokenIds;
    /**
     * Most tokens of a text or question, special tokens included.
     */
    max_text_tokens: number;
    /**
     * Most tokens of a generated VQA answer.
     */
    max_answer_tokens: number;
    /**
     * Most tokens of a generated caption.
     */
    max_caption_tokens: number;
    /**
     * Required from format 4: the first token of the image-grounded text encoder's input (itm and vqa_encoder graphs). "enc": the tokenizer's [CLS] is replaced by [ENC] (BLIP, DLIP runs; what format 3 bundles mean). "cls": [CLS] is kept (Hugging Face's BLIP classes feed the processor's ids as they are).
     */
    fusion_first_token?: "enc" | "cls";
  };
  /**
   * The sizes the graphs are built with; contract.json's dims name these keys.
   */
  model: {
    /**
     * E: ITC embedding size.
     */
    embed_dim: number;
    /**
     * N = 1 + (S / patch)^2 image tokens, [CLS] first.
     */
    image_tokens: number;
    /**
     * Dv: image token width.
     */
    vision_width: number;
    /**
     * Dt: text token width; must equal vision_width (the decoder cross-attends to image tokens and question states with the same weights).
     */
    text_width: number;
    /**
     * K: decoder layers (the decoder graph has a key and a value cache per layer).
     */
    decoder_layers: number;
    /**
     * H: decoder attention heads.
     */
    decoder_heads: number;
    /**
     * Dh: width of one decoder head.
     */
    decoder_head_dim: number;
    /**
     * V: vocabulary size.
     */
    vocab_size: number;
    /**
     * Required (format 3): where true, the VQA answer decoder reads the question states followed by the image tokens (cross_kv's encoder_hidden for answers); where false, the question states alone (BLIP).
     */
    vqa_decoder_reads_image?: boolean;
  };
  /**
   * One entry per graph the manifest's tasks need (contract.json's tasks; format 3: every graph), with its inputs and outputs for this manifest's dims: vision (image -> image token embeddings + ITC image feature), text (text -> ITC text feature), itm (image tokens + [ENC] text -> ITM logits), vqa_encoder (image tokens + [ENC] question -> question states), cross_kv (image tokens or question states -> the decoder's cross-attention keys and values, once per image or question), decoder (one decoder step with a key/value cache and per-row positions, for captions and VQA answers).
   */
  graphs: {
    vision?: GraphSpec;
    text?: GraphSpec;
    itm?: GraphSpec;
    vqa_encoder?: GraphSpec;
    cross_kv?: GraphSpec;
    decoder?: GraphSpec;
  };
  /**
   * sha256 of every file of the bundle except manifest.json, by file name.
   */
  files: {
    [k: string]: Sha256;
  };
  /**
   * The weights the graphs were exported from, so that `dlip export BUNDLE` can write the bundle again (another bundle format, int8 graphs) without the run folder. Absent where the bundle has random weights (its source re-creates them) and in bundles exported before bundles carried weights. Both files are listed in files; the server does not read them.
   */
  weights?: {
    /**
     * a plain file name of the bundle: no '/' or '\', not '.', '..' or manifest.json
     */
    file: string;
    /**
     * a plain file name of the bundle: no '/' or '\', not '.', '..' or manifest.json
     */
    config: string;
  };
  /**
   * Parameter counts; the four parts sum to total.
   */
  params: {
    /**
     * Every parameter of the model.
     */
    total: number;
    /**
     * The ViT image encoder.
     */
    vision: number;
    /**
     * The BERT text encoder, its cross-attention included.
     */
    text_encoder: number;
    /**
     * The text decoder, its LM head included.
     */
    text_decoder: number;
    /**
     * ITC projections, the ITM head and the ITC temperature.
     */
    heads: number;
    [k: string]: Count;
  };
  /**
   * The evaluation of this exact model: retrieval_tr1, retrieval_ir1, caption_bleu4, caption_cider, vqa_acc and, on Shapes data, caption_exact_set (the headline of the run's metrics.json: percentages, CIDEr x100; caption_exact_set: beam-search captions naming exactly the scene's (colour, shape) pairs, the other caption correctness rates under summary.caption.beamK.correctness) and summary (the whole metrics.json, whose settings say how it was measured); {} for random weights, for a run never evaluated, and for a metrics.json older than the checkpoint.
   */
  metrics: {
    [k: string]: unknown;
  };
  /**
   * What the exporter measured before writing a Hugging Face checkpoint as it is: the bundle's graphs on onnxruntime against transformers' own model on a few inputs. max_abs_diff per compared output, tolerance the most it allows (export refuses above it), greedy_equal of greedy_total greedy token sequences identical (export refuses any other).
   */
  parity?: {
    /**
     * What the graphs were compared with, e.g. transformers 5.24.0 BlipForQuestionAnswering.
     */
    reference: string;
    tolerance: number;
    max_abs_diff: {
      [k: string]: number;
    };
    greedy_equal: Count;
    greedy_total: Count;
  };
  /**
   * The tasks the bundle serves (format 4: its graphs are exactly those these tasks need, contract.json's tasks); a request for another task is refused.
   *
   * @minItems 1
   */
  tasks: ["retrieval" | "captioning" | "vqa", ...("retrieval" | "captioning" | "vqa")[]];
}
/**
 * How an image becomes pixel_values; the server reproduces exactly these steps.
 */
export interface Preprocessing {
  /**
   * S: images are resized to S x S pixels (the vision graph's input side).
   */
  image_size: number;
  /**
   * Per-channel mean (RGB) subtracted after scaling.
   *
   * @minItems 3
   * @maxItems 3
   */
  mean: [number, number, number];
  /**
   * Per-channel standard deviation (RGB) divided by after the mean, each > 0.
   *
   * @minItems 3
   * @maxItems 3
   */
  std: [number, number, number];
  /**
   * The resize filter (Pillow's, which the server reproduces).
   */
  resample: "bicubic" | "bilinear";
  /**
   * Transparent pixels are composited over white.
   */
  alpha: "composite_white";
  /**
   * A one-channel image is replicated to three channels.
   */
  grayscale: "replicate";
  /**
   * The EXIF orientation is applied before resizing.
   */
  exif: "apply";
  /**
   * Tensor layout of pixel_values.
   */
  layout: "NCHW";
  /**
   * Pixel values are divided by 255 before normalisation.
   */
  scale: "1/255";
}
/**
 * Ids of the special tokens: [PAD], [UNK], [CLS] (text encoder), [SEP] (end), [MASK], [ENC] (ITM and VQA encoder input), [DEC] (first decoder token).
 */
export interface SpecialTokenIds {
  pad: TokenId;
  unk: TokenId;
  cls: TokenId;
  sep: TokenId;
  mask: TokenId;
  enc: TokenId;
  dec: TokenId;
}
/**
 * A graph's file, checksum, inputs and outputs (contract.json's, for the manifest's dims).
 */
export interface GraphSpec {
  file: FileName;
  sha256: Sha256;
  /**
   * The graph's inputs in order, as in contract.json.
   */
  inputs: TensorSpec[];
  /**
   * The graph's outputs in order, as in contract.json.
   */
  outputs: TensorSpec[];
  /**
   * The file that holds the graph's weights as ONNX external data (FILE.data beside the graph, listed in files), written where a graph would pass protobuf's 2 GB limit; onnxruntime reads it when it loads the graph from its path.
   */
  external_data?: string;
  /**
   * The optional dynamic-quantised variant: same inputs and outputs (PRECISION=int8).
   */
  int8?: {
    file: FileName;
    sha256: Sha256;
    /**
     * The file that holds the graph's weights as ONNX external data (FILE.data beside the graph, listed in files), written where a graph would pass protobuf's 2 GB limit; onnxruntime reads it when it loads the graph from its path.
     */
    external_data?: string;
  };
  /**
   * The optional float16 variant for GPUs (PRECISION=fp16): float16 weights and arithmetic inside, LayerNormalization, Softmax and the ops that overflow in float16 kept in float32, inputs and outputs float32 as contract.json says.
   */
  fp16?: {
    file: FileName;
    sha256: Sha256;
    /**
     * The file that holds the graph's weights as ONNX external data (FILE.data beside the graph, listed in files), written where a graph would pass protobuf's 2 GB limit; onnxruntime reads it when it loads the graph from its path.
     */
    external_data?: string;
  };
}
/**
 * One input or output of a graph.
 */
export interface TensorSpec {
  /**
   * The exact input or output name.
   */
  name: string;
  /**
   * float32 activations, int64 token ids and masks.
   */
  dtype: "float32" | "int64";
  /**
   * Integers for fixed axes, symbolic names for dynamic ones (contract.json's axes), e.g. ["B", 2, "P+T", 16].
   */
  shape: (number | string)[];
}
