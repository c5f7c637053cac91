import{a,b,c}from"./c-VCF66KMV.js";import"./c-3NHOXOEF.js";import"./c-DPIAFEG3.js";export{a as Forgot,c as Reset,b as useLinkToken};
