import Foundation

/// One instance of one frame: `id` names the same (query, class) track in every frame of the clip.
public struct VideoInstance: Equatable {
    public let id: Int
    public let query: Int
    public let label: Int
    /// Class score x the mask's mean probability in this frame.
    public let score: Float
    /// Softmax probability of `label` from the class logits averaged over the tubes (the same in every frame).
    public let classScore: Float
    /// [x0, y0, x1, y1] of the mask's pixels, x1 and y1 exclusive; zeros for an empty mask.
    public let box: [Float]
    public let area: Int
}

/// RAP-SAM's near-online video instance segmentation around its tube head, run in the app (what
/// `samexport.families.rapsam.video` does in Python, after the official `Mask2formerVideoMinVIS`): the clip is split into
/// tubes, each tube's queries are matched to the previous tube's by the cosine of their embeddings
/// (Hungarian assignment), the class logits are averaged over the tubes, and every frame gets the best
/// (query, class) pairs with their masks. Ids are given in descending class score.
public enum VideoTracks {
    public static let clipSize = 5
    public static let clipSizeSmall = 3
    /// A clip of more frames than this goes in tubes of `clipSize`, others in tubes of `clipSizeSmall`.
    public static let smallClipFrames = 15
    public static let maxInstances = 100

    /// The end frame (exclusive) of every tube of a clip of `frames` frames (the official `video_split`):
    /// the remainder is spread over the last tubes, one frame less each.
    public static func tubeEnds(frames: Int) -> [Int] {
        precondition(frames >= 1, "a clip needs at least one frame")
        let size = frames > smallClipFrames ? clipSize : clipSizeSmall
        let splits = (frames + size - 1) / size
        var ends = (1...splits).map { $0 * size }
        let excess = ends[splits - 1] - frames
        if excess < splits {
            for i in 0..<excess {
                ends[splits - 1 - i] -= excess - i
            }
        } else {
            ends[splits - 1] -= excess
        }
        return ends
    }

    /// Minimum-cost assignment of a square `size` x `size` cost matrix (row-major): for every row, its column
    /// (Kuhn-Munkres with potentials, O(size^3); what scipy's `linear_sum_assignment` returns as its
    /// second array for a square matrix).
    public static func assignment(cost: [Float], size: Int) -> [Int] {
        precondition(cost.count == size * size, "the cost matrix is size x size")
        let n = size
        if n == 0 { return [] }
        var u = [Double](repeating: 0, count: n + 1)
        var v = [Double](repeating: 0, count: n + 1)
        var columnRow = [Int](repeating: 0, count: n + 1)  // 1-based row assigned to each column, 0: none
        var way = [Int](repeating: 0, count: n + 1)
        for row in 1...n {
            columnRow[0] = row
            var column0 = 0
            var minimum = [Double](repeating: .infinity, count: n + 1)
            var used = [Bool](repeating: false, count: n + 1)
            repeat {
                used[column0] = true
                let row0 = columnRow[column0]
                var delta = Double.infinity
                var column1 = 0
                for column in 1...n where !used[column] {
                    let reduced = Double(cost[(row0 - 1) * n + column - 1]) - u[row0] - v[column]
                    if reduced < minimum[column] {
                        minimum[column] = reduced
                        way[column] = column0
                    }
                    if minimum[column] < delta {
                        delta = minimum[column]
                        column1 = column
                    }
                }
                for column in 0...n {
                    if used[column] {
                        u[columnRow[column]] += delta
                        v[column] -= delta
                    } else {
                        minimum[column] -= delta
                    }
                }
                column0 = column1
            } while columnRow[column0] != 0
            repeat {
                let column1 = way[column0]
                columnRow[column0] = columnRow[column1]
                column0 = column1
            } while column0 != 0
        }
        var result = [Int](repeating: 0, count: n)
        for column in 1...n where columnRow[column] > 0 {
            result[columnRow[column] - 1] = column - 1
        }
        return result
    }

    /// The order that aligns the current tube's queries to the previous (already matched) tube's:
    /// `current[order[j]]` is the object `previous[j]` is. Embeddings are `queries` x `dim`, row-major.
    public static func matchQueries(previous: [Float], current: [Float], queries: Int, dim: Int) -> [Int] {
        precondition(previous.count == queries * dim && current.count == queries * dim, "embeddings are queries x dim")
        let a = normalizedRows(previous, dim: dim)
        let b = normalizedRows(current, dim: dim)
        var cost = [Float](repeating: 0, count: queries * queries)
        for i in 0..<queries {
            for j in 0..<queries {
                var dot: Float = 0
                for d in 0..<dim {
                    dot += a[i * dim + d] * b[j * dim + d]
                }
                cost[i * queries + j] = 1 - dot
            }
        }
        return assignment(cost: cost, size: queries)
    }

    static func normalizedRows(_ values: [Float], dim: Int) -> [Float] {
        var out = values
        for row in 0..<(values.count / dim) {
            var norm: Float = 0
            for d in 0..<dim { norm += values[row * dim + d] * values[row * dim + d] }
            let scale = 1 / norm.squareRoot()
            for d in 0..<dim { out[row * dim + d] *= scale }
        }
        return out
    }

    /// The clip's instances: the best `maxInstances` (query, class) pairs by softmax probability over all
    /// classes of the averaged class logits (`queries` x `columns`, the last column no object), then the
    /// things among them (labels below `things`), in id order.
    public static func candidates(classLogits: [Float], queries: Int, columns: Int, things: Int,
                                  maxInstances: Int = maxInstances) -> [(query: Int, label: Int, classScore: Float)] {
        precondition(classLogits.count == queries * columns, "class logits are queries x columns")
        let classes = columns - 1
        var pairs: [(index: Int, score: Float)] = []
        for query in 0..<queries {
            let row = classLogits[(query * columns)..<((query + 1) * columns)]
            let peak = row.max() ?? 0
            let exps = row.map { exp($0 - peak) }
            let total = exps.reduce(0, +)
            for label in 0..<classes {
                pairs.append((query * classes + label, exps[label] / total))
            }
        }
        pairs.sort { $0.score != $1.score ? $0.score > $1.score : $0.index < $1.index }
        return pairs.prefix(maxInstances)
            .filter { $0.index % classes < things }
            .map { (query: $0.index / classes, label: $0.index % classes, classScore: $0.score) }
    }

    /// One frame's instances from the candidates and that frame's masks.
    public static func frameInstances(candidates: [(query: Int, label: Int, classScore: Float)],
                                      masks: QueryMasks) -> [VideoInstance] {
        candidates.enumerated().map { k, candidate in
            VideoInstance(id: k + 1, query: candidate.query, label: candidate.label,
                          score: candidate.classScore * masks.maskScores[candidate.query],
                          classScore: candidate.classScore, box: masks.boxes[candidate.query],
                          area: masks.areas[candidate.query])
        }
    }
}

/// Links a clip's tubes as they come (`VideoTracks`): `add` a tube's class logits and query embeddings, get
/// the order that aligns its queries and masks to the first tube's; `classLogits` averages them.
public struct TubeLinker {
    public let queries: Int
    public let dim: Int
    public let columns: Int
    public private(set) var orders: [[Int]] = []
    private var previous: [Float]?
    private var sum: [Float]

    public init(queries: Int = 100, dim: Int = 256, columns: Int = 41) {
        self.queries = queries
        self.dim = dim
        self.columns = columns
        sum = [Float](repeating: 0, count: queries * columns)
    }

    /// classLogits: queries x columns, embeddings: queries x dim, both row-major in the tube's own order.
    @discardableResult
    public mutating func add(classLogits: [Float], embeddings: [Float]) -> [Int] {
        precondition(classLogits.count == queries * columns, "class logits are queries x columns")
        let order = previous.map { VideoTracks.matchQueries(previous: $0, current: embeddings, queries: queries, dim: dim) }
            ?? Array(0..<queries)
        var matched = [Float](repeating: 0, count: queries * dim)
        for (j, q) in order.enumerated() {
            for d in 0..<dim { matched[j * dim + d] = embeddings[q * dim + d] }
            for c in 0..<columns { sum[j * columns + c] += classLogits[q * columns + c] }
        }
        previous = matched
        orders.append(order)
        return order
    }

    /// queries x columns: the matched class logits averaged over the tubes added so far.
    public var classLogits: [Float] {
        let count = Float(max(orders.count, 1))
        return sum.map { $0 / count }
    }
}

/// One frame's mask of every query at the output size (after `MaskPostprocessing`), summarised.
public struct QueryMasks {
    public let areas: [Int]
    public let boxes: [[Float]]
    public let maskScores: [Float]

    /// maskLogits: queries maps of `width` x `height` logits, row-major, in the matched query order.
    public init(maskLogits: [Float], queries: Int, width: Int, height: Int) {
        let pixels = width * height
        precondition(maskLogits.count == queries * pixels, "mask logits are queries x height x width")
        var areas = [Int](), boxes = [[Float]](), scores = [Float]()
        for query in 0..<queries {
            var area = 0
            var probabilities: Float = 0
            var x0 = width, y0 = height, x1 = -1, y1 = -1
            for row in 0..<height {
                for column in 0..<width {
                    let logit = maskLogits[query * pixels + row * width + column]
                    guard logit > 0 else { continue }
                    area += 1
                    probabilities += 1 / (1 + exp(-logit))
                    x0 = min(x0, column); y0 = min(y0, row); x1 = max(x1, column); y1 = max(y1, row)
                }
            }
            areas.append(area)
            boxes.append(area > 0 ? [Float(x0), Float(y0), Float(x1 + 1), Float(y1 + 1)] : [0, 0, 0, 0])
            scores.append(probabilities / (Float(area) + 1e-6))
        }
        self.areas = areas
        self.boxes = boxes
        maskScores = scores
    }
}
