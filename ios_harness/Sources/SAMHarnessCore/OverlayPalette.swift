/// Distinct overlay colours for masks: golden-ratio steps around the hue circle at a fixed saturation
/// and brightness (HSV, as UIColor(hue:saturation:brightness:) and Python's colorsys define it).
public enum OverlayPalette {
    public static let saturation = 0.85
    public static let brightness = 0.95

    /// The colour of mask `number` (0, 1, 2, ...) as 8-bit RGB.
    public static func color(_ number: Int) -> (UInt8, UInt8, UInt8) {
        let hue = (Double(number) * 0.618034).truncatingRemainder(dividingBy: 1)
        let (red, green, blue) = rgb(hue: hue, saturation: saturation, brightness: brightness)
        return (UInt8(red * 255), UInt8(green * 255), UInt8(blue * 255))
    }

    /// HSV to RGB, every component in 0...1.
    public static func rgb(hue: Double, saturation: Double, brightness: Double) -> (Double, Double, Double) {
        let sector = hue * 6
        let index = Int(sector) % 6
        let fraction = sector - sector.rounded(.down)
        let p = brightness * (1 - saturation)
        let q = brightness * (1 - saturation * fraction)
        let t = brightness * (1 - saturation * (1 - fraction))
        switch index {
        case 0: return (brightness, t, p)
        case 1: return (q, brightness, p)
        case 2: return (p, brightness, t)
        case 3: return (p, q, brightness)
        case 4: return (t, p, brightness)
        default: return (brightness, p, q)
        }
    }
}
